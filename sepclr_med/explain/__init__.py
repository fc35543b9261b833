"""Explain the salient space: directions, voxel saliency maps, atlas regions, clinical scores."""
