"""One exception tree and the warning classes users can filter.

Every error says what happened, the offending value and how to fix it.
"""

from __future__ import annotations

import errno

from .redact import redact_text


class LcupError(Exception):
    """Base class of every error lcup raises on purpose. Its text never shows a credential."""

    def __str__(self) -> str:
        return redact_text(self.args[0] if len(self.args) == 1 and isinstance(self.args[0], str) else super().__str__())


class ConfigError(LcupError, ValueError):
    """A pipeline file or stage setting is invalid (unknown key, wrong type, missing field)."""


class EmptySearchError(LcupError):
    """A search over the catalog matched no item for the area and dates asked for."""


class MissingBandError(LcupError, KeyError):
    """A band asked for is not provided by the items or the provider profile."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return LcupError.__str__(self) if self.args else ""


class ProviderError(LcupError):
    """An unknown provider, collection, or an item that does not match its provider layout."""


class GridError(LcupError):
    """An area of interest, bbox or grid is malformed or does not overlap the data."""


class LabelError(LcupError):
    """A label map cannot be used: no overlap, unknown codes, too few classes."""


class ChunkingError(LcupError, ValueError):
    """A dimension is split across chunks where an operation needs it whole."""


class NoValidDataError(LcupError):
    """Every observation of the area is masked (cloud, shadow, nodata)."""


class ModelError(LcupError):
    """A model does not match the feature cube or legend it is applied to."""


class OutputExistsError(LcupError, FileExistsError):
    """An output path exists and neither overwrite nor resume was asked."""


class MissingDependencyError(LcupError, ImportError):
    """An optional dependency a feature needs is not installed; the message names the extra to install."""


class ReadError(LcupError, OSError):
    """An asset could not be read (missing, truncated, connection lost)."""


class WriteError(LcupError, OSError):
    """An output could not be written (disk full, read-only file system)."""


class LcupWarning(UserWarning):
    """Base class of lcup's warnings. Its text never shows a credential."""

    def __str__(self) -> str:
        return redact_text(super().__str__())


class LowCoverageWarning(LcupWarning):
    """Dates were dropped because their valid fraction is below the threshold."""


class EmptyClassWarning(LcupWarning):
    """A class has too few samples and was dropped or kept on a documented policy."""


class TileFailedWarning(LcupWarning):
    """A tile of a Sentinel-2-tiled run failed after its retries; the others were mapped."""


class SkippedAssetWarning(LcupWarning):
    """An asset failed to read and was skipped under the ``on_error: skip`` policy."""


def clear_error(e: BaseException, out) -> "LcupError | None":
    """An :class:`LcupError` for a failure from inside a library that a user can act on, or None.

    Disk full and read-only file systems become a :class:`WriteError` naming ``out`` (the output folder); a
    raster that fails to decode while the cube is computed (corrupt inside, past the pre-flight probe) a
    :class:`ReadError`.

    Examples
    --------
    >>> import errno
    >>> type(clear_error(OSError(errno.ENOSPC, "No space left on device"), "out")).__name__
    'WriteError'
    """
    if isinstance(e, LcupError) or not isinstance(e, Exception):
        return None
    chain, cur = [], e
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for x in chain:
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return WriteError(f"cannot write the outputs into {out}: {x.strerror or x}; free some space or choose "
                              "another output.dir (CLI: --output DIR), then run again with --resume")
    text = " ".join(f"{type(x).__module__}.{type(x).__name__}: {x}" for x in chain).lower()
    if "rasterio" in text or "cple_" in text or "tiffread" in text:
        return ReadError(f"a raster could not be read while computing: {chain[0]}; if a source file is damaged, set "
                         "source.on_error: skip to treat unreadable assets as missing, or fix the file")
    return None
