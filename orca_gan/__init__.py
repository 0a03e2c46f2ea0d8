"""orca_gan: generative models of killer-whale sound."""

__version__ = "0.1.0"
