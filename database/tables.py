"""Text tables for the command line (``admin``, ``history``): one shape for every listing."""


def aligned(names: list[str], rows: list, numeric: list[bool]) -> list[str]:
    """``rows`` of cell strings under ``names``, columns padded to their widest cell (the
    ``numeric`` ones to the right), then a closing ``(N rows)`` line."""
    widths = [max([len(name)] + [len(row[index]) for row in rows]) for index, name in enumerate(names)]

    def line(cells) -> str:
        return "  ".join(cell.rjust(width) if right else cell.ljust(width)
                         for cell, width, right in zip(cells, widths, numeric, strict=True)).rstrip()
    return [line(names), *(line(row) for row in rows), f"({len(rows)} rows)"]
