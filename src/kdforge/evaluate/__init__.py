"""Evaluation: metrics, size and speed measurement, and the teacher-vs-student report."""
