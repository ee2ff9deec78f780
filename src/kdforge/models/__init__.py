"""Teachers and students: loading, building, and reading their internals as ``Views``."""

# Imported for their side effect: the pQRNN, static-embedding and joint intent + slot classes register with
# transformers' Auto classes.
from kdforge.models import joint, pqrnn, static  # noqa: F401
from kdforge.models.loading import load_model
from kdforge.models.student import build_student
from kdforge.models.text_model import TextModel
from kdforge.models.views import Views

__all__ = ["TextModel", "Views", "build_student", "load_model"]
