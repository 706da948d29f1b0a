"""Model families as plug-ins: one ``Family`` class per family (``multitask``, ``semdep``, ``mmemo``), registered
with ``@register_family``; see ``affect_zoo.families.base``."""
from affect_zoo.families import mmemo, multitask, semdep  # noqa: F401 (registers them)
from affect_zoo.families.base import Family, Stage, family_of, get_family, register_family

__all__ = ["Family", "Stage", "family_of", "get_family", "register_family"]
