r"""Reading predictions, labels and lenses from the files people have.

Predictions come as CSV (from pandas, numpy, Excel, a notebook), Parquet,
``.npy`` or ``.npz``; a source is a path, ``bytes`` or a binary file-like
object (a Streamlit upload). Anything that cannot be used raises
:class:`~lensdash.InputError` whose message names the file, the row and
column (1-based, as a spreadsheet shows them: the header is row 1), what was
expected, what was found and how to fix it.

Detection of ``kind="auto"`` (documented rule, applied to the whole matrix):

* every value in ``[0, 1]`` and every row sums to 1 within :data:`PROB_SUM_ATOL`: probabilities;
* every value in ``[0, 1]`` but some row does not sum to 1: refused (it looks like
  unnormalised probabilities; pass ``kind="logits"`` if they really are logits);
* every value ``<= 0`` and every row's ``logsumexp`` within :data:`PROB_SUM_ATOL` of 0: log-probabilities;
* anything else: logits.

Metadata columns (CSV with a header, Parquet): columns named in ``meta_columns=``, columns
named one of :data:`META_NAMES` (``id``, ``sample_id``, ``index``, ``idx``, ``filename``, ``path``; any
case) and text columns (text and no number in the first rows) are kept aside, not read as scores:
:attr:`Predictions.metadata` / :attr:`Chunk.metadata` (a DataFrame, one row per sample; text as
pandas' string dtype, numbers as read), with a note naming them; at most :data:`MAX_META_COLUMNS`.

Streaming (:func:`open_stream`): Predictions too large to hold: read chunk by chunk, each process of a sharded run
its own range. Both readers are one: :func:`read_predictions` gathers the parts that :func:`open_stream` hands
out as chunks (into one float32 array), and settles the labels and the kind on all of them.

:func:`open_stream` reads CSV, Parquet or ``.npy`` files (paths) with the same
rules and the same :class:`~lensdash.InputError` messages as
:func:`~lensdash.read_predictions`, but yields :class:`Chunk`\ s whose size is
bounded by ``chunk_rows`` (or one CSV part of ``_csv_parse.PART_BYTES``), so memory does not grow with the file.
A soft-label file gives each chunk its rows of :attr:`Chunk.targets`.
With ``shard=(rank, world_size)`` a process reads only its share: a byte range
cut at line ends (CSV), a range of row groups (Parquet) or of rows (``.npy``).
Parquet is read a row group at a time, so its memory is bounded by the writer's row-group size.

Layout of the package (private modules by job; this module is the public face):

* ``_source``: paths, bytes and uploads as zero-copy views; :class:`Limits`; the readers' error boundary.
* ``_csv_layout``: a CSV's delimiter, header, class and label columns from its first lines.
* ``_csv_parse``: CSV parts parsed on a thread pool; wide files split by arrow's kernels; error diagnosis.
* ``_binary``: ``.npy``, ``.npz`` and Parquet, sizes checked from headers and footers before decoding.
* ``_labels``: label columns and files, as 0..K-1 or class names.
* ``_kinds``: logits, probabilities or log-probabilities: detection and checks; :func:`reinterpret`, a read
  taken as another kind without its file.
* ``_reader``: the one reader: a file's layout by its format (the one dispatcher), its rows part by part.
* ``_predictions``: :func:`read_predictions`, :class:`Predictions`: the reader's parts gathered in one array.
* ``_stream``: :func:`open_stream`, :class:`Chunk`, :class:`Stream`: the reader's parts as chunks.
* ``_lens_files``: :func:`read_lens`, :func:`save_lens`, :func:`lens_to_bytes`.
* ``_hierarchy_files``: :func:`read_hierarchy` (edge lists, ancestor rows, nested JSON).
"""

from lensdash.io._hierarchy_files import MAX_HIERARCHY_BYTES, read_hierarchy
from lensdash.io._kinds import reinterpret
from lensdash.io._lens_files import lens_to_bytes, read_lens, save_lens
from lensdash.io._predictions import Predictions, read_predictions
from lensdash.io._source import (
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_CLASSES,
    DEFAULT_MAX_LENS_CELLS,
    KINDS,
    LABEL_NAMES,
    MAX_META_COLUMNS,
    MAX_UPLOAD_MB,
    META_NAMES,
    PROB_SUM_ATOL,
    Limits,
    Source,
    file_format,
)
from lensdash.io._stream import CHUNK_ROWS, Chunk, Stream, open_stream

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_MAX_CELLS",
    "DEFAULT_MAX_CLASSES",
    "DEFAULT_MAX_LENS_CELLS",
    "KINDS",
    "LABEL_NAMES",
    "MAX_HIERARCHY_BYTES",
    "MAX_META_COLUMNS",
    "MAX_UPLOAD_MB",
    "META_NAMES",
    "PROB_SUM_ATOL",
    "Chunk",
    "Limits",
    "Predictions",
    "Source",
    "Stream",
    "file_format",
    "lens_to_bytes",
    "open_stream",
    "read_hierarchy",
    "read_lens",
    "read_predictions",
    "reinterpret",
    "save_lens",
]
