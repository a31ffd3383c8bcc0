"""STNO network modules: plain torch + einops, no training framework."""

from stno.ops.warping import backward_warp, coordinate_grid, pixel_centers

from .attention import GalerkinAttention, HeadLayerNorm, SoftmaxAttention, galerkin_attend
from .baseline import BicubicBlend
from .decoder import ContinuousDecoder, TargetGridGalerkinBlock
from .motion import CrossFrameMotionBlock, FeaturePyramid, MotionEstimate, MotionEstimator
from .propagation import BidirectionalPropagation, ResidualBlock, ResidualTrunk
from .stno import STNO, check_video_call

__all__ = [
    "STNO",
    "BicubicBlend",
    "GalerkinAttention",
    "SoftmaxAttention",
    "HeadLayerNorm",
    "galerkin_attend",
    "ContinuousDecoder",
    "TargetGridGalerkinBlock",
    "CrossFrameMotionBlock",
    "FeaturePyramid",
    "MotionEstimator",
    "MotionEstimate",
    "BidirectionalPropagation",
    "ResidualBlock",
    "ResidualTrunk",
    "backward_warp",
    "coordinate_grid",
    "pixel_centers",
    "check_video_call",
]
