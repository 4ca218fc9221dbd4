"""Brain-JEPA spatiotemporal masking: context/target token indices per batch, from a `MaskConfig`."""

from brainjepa.masks.config import MaskConfig
from brainjepa.masks.draw import batch_seed, draw_masks
from brainjepa.masks.grid import mask_grid
from brainjepa.masks.sampling import side_edge_width

__all__ = ["MaskConfig", "batch_seed", "draw_masks", "mask_grid", "side_edge_width"]
