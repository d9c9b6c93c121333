"""The data doctor: read preference/SFT/prompt files, detect their layout, normalize them to TRL's dataset
types, explain every dropped row, and keep normalized datasets in the workspace library. No gradio here.

    sniff.py     refuse a file from its name and first bytes (web page, archive, image, UTF-16, binary)
    readers.py   JSONL / JSON array / CSV / TSV / Parquet -> records (streamed, size-capped, never unpickled);
                 json_array.py: a big JSON array element by element; records.py: Record and the limits
    layouts.py   the known layouts and their row normalizers;  values.py  checks of single values
    detect.py    layout detection, column maps, --format;      check.py   the pipeline and DataReport
    library.py   workspace/datasets/<name>/{train,eval}.jsonl + manifest.json
    derive.py    prompts from any kind, pairs as unpaired rows (the command line is cli/data.py)
"""

from rlhf_studio.data.check import DataReport, check_file
from rlhf_studio.data.derive import KINDS, extract_prompts, unpair_rows
from rlhf_studio.data.detect import parse_column_map
from rlhf_studio.data.layouts import LAYOUTS_BY_NAME
from rlhf_studio.data.library import (
    Manifest,
    delete_dataset,
    first_row,
    import_dataset,
    list_datasets,
    load_split,
    load_split_dataset,
    read_manifest,
)
from rlhf_studio.data.problems import DataError, Problem

FORMATS = tuple(LAYOUTS_BY_NAME)

__all__ = [
    "FORMATS",
    "KINDS",
    "DataError",
    "DataReport",
    "Manifest",
    "Problem",
    "check_file",
    "delete_dataset",
    "extract_prompts",
    "first_row",
    "import_dataset",
    "list_datasets",
    "load_split",
    "load_split_dataset",
    "parse_column_map",
    "read_manifest",
    "unpair_rows",
]
