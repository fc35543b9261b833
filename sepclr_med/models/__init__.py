"""SepCLR networks: 3D backbones and the two-encoder model with projection heads."""

from sepclr_med.models.backbones import BACKBONES, SmallCNN3D, build_backbone
from sepclr_med.models.sepclr import ModelConfig, ProjectionHead, SepCLRModel, SepCLROutput

__all__ = ["BACKBONES", "ModelConfig", "ProjectionHead", "SepCLRModel", "SepCLROutput", "SmallCNN3D", "build_backbone"]
