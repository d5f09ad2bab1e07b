"""Inference with a trained refiner: whole datasets refined with their labels kept."""

from .refine import refine_array, refine_dataset

__all__ = ["refine_array", "refine_dataset"]
