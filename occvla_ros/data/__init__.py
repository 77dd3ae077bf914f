"""nuScenes, Occ3D and OmniDrive data: loading, labelling and the synthetic world."""
