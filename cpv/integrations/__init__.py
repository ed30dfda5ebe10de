"""Thin adapters of :class:`cpv.Checkpointer` and the many-writers protocol to training libraries.

Each module imports its library at its own import, never at ``import cpv``: install the extra
that brings it (``pip install cpv-checkpoints[hf]`` or ``[lightning]``) and import the module
(``from cpv.integrations.transformers import CPVCallback``). See docs/integrations.md.
"""
