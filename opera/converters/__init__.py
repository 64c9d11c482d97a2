"""Converters of released checkpoints (H-DETR, DINO, Co-DETR) to opera's
layout; they build the target model to check the result."""
