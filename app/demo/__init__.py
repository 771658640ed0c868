"""The demo data set of `rickhouse demo`: a recommendation app (recsys.yaml + dataset.py)."""

from app.demo.dataset import DEFINITIONS_PATH, DemoPlan, generate, plan

__all__ = ["DEFINITIONS_PATH", "DemoPlan", "generate", "plan"]
