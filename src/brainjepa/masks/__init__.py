"""Brain-JEPA spatiotemporal masking: a DataLoader collator producing context/target token indices."""

from brainjepa.masks.collator import MaskCollator, batch_seed, collate_samples
from brainjepa.masks.grid import mask_grid
from brainjepa.masks.sampling import MaskScales, sample_masks, side_edge_width

__all__ = [
    "MaskCollator",
    "MaskScales",
    "batch_seed",
    "collate_samples",
    "mask_grid",
    "sample_masks",
    "side_edge_width",
]
