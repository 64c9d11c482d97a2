__version__ = '0.1.0'


def parse_version_info(version_str):
    """Turn '1.2.3' or '1.2.3rc1' into a tuple for comparisons."""
    parts = []
    for piece in version_str.split('.'):
        if piece.isdigit():
            parts.append(int(piece))
        else:
            parts.append(piece)
    return tuple(parts)


version_info = parse_version_info(__version__)
