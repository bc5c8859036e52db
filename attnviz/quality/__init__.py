"""How good the maps are: mosaics, single photos with masks, deletion and insertion, and fitting heads."""
