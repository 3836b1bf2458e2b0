"""Argument types shared by the runners' command lines."""
import argparse


def int_list(text):
    """argparse type: '1-5', '1,2,7' or '1-3,9' -> [1, 2, ...] (order kept,
    duplicates dropped)."""
    values = []
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            if dash:
                values.extend(range(int(low), int(high) + 1))
            elif part.strip():
                values.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers like '1-5' or '1,4,9', got %r"
                                         % text) from None
    if not values:
        raise argparse.ArgumentTypeError("no numbers in %r" % text)
    return list(dict.fromkeys(values))
