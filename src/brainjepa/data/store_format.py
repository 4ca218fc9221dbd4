"""The store's on-disk format: its name, version, file names and manifest columns, at the bottom of the data stack.

The readers need them too (a store inside an input folder is not read as time series; a phenotype column may not
take a manifest column's name), so they live here rather than in `brainjepa.data.store`, which the readers sit
below.
"""

FORMAT = "brainjepa-store"
VERSION = 1
DATA_FILE = "data.f32"
MANIFEST_FILE = "manifest.csv"
META_FILE = "store.json"
MANIFEST_COLUMNS = ("subject", "run", "offset", "frames", "tr", "source")
