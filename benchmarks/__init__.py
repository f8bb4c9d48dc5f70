"""The benchmarks (`main.py bench ...`); what several of them share."""

import statistics


def median_present(values: list):
    """The median of the values that are not None (None if none are): a figure some runs lacked."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None
