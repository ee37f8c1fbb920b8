"""JUMP stream core: the JUMP model (Zhou et al., IJCAI 2018) and its offline life."""

__version__ = "0.1.0"
