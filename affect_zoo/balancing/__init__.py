"""Balancers for multi-task training: one base that owns the backward pass, one small class per published method."""
from affect_zoo.balancing.base import Balancer
from affect_zoo.balancing.cagrad import CAGrad
from affect_zoo.balancing.dwa import DWA
from affect_zoo.balancing.fixed import FixedWeights
from affect_zoo.balancing.gradnorm import GradNorm
from affect_zoo.balancing.mgda import MGDA
from affect_zoo.balancing.pcgrad import PCGrad
from affect_zoo.balancing.surgery import GradientSurgery
from affect_zoo.balancing.uncertainty import Uncertainty

BALANCERS = {"fixed": FixedWeights, "uncertainty": Uncertainty, "dwa": DWA, "gradnorm": GradNorm,
             "pcgrad": PCGrad, "mgda": MGDA, "cagrad": CAGrad}


def get(name_or_balancer, **options):
    """A balancer from its name (as recipes give it) or an instance passed through."""
    if isinstance(name_or_balancer, Balancer):
        return name_or_balancer
    try:
        return BALANCERS[name_or_balancer](**options)
    except KeyError:
        raise ValueError(f"unknown balancer {name_or_balancer!r}; known: {', '.join(BALANCERS)}") from None


__all__ = ["Balancer", "GradientSurgery", "FixedWeights", "Uncertainty", "DWA", "GradNorm", "PCGrad", "MGDA",
           "CAGrad", "BALANCERS", "get"]
