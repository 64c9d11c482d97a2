from .oks_loss import OKSLoss, oks_loss

__all__ = ['OKSLoss', 'oks_loss']
