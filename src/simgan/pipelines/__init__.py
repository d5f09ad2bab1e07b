"""Inference with a trained refiner: whole datasets refined with their labels kept."""

from .refine import BatchRefiner, refine_array, refine_dataset

__all__ = ["BatchRefiner", "refine_array", "refine_dataset"]
