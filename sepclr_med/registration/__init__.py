"""Raw T1-weighted scans into template space (``sepclr-med preprocess``), with ANTsPy.

Between the cohort (``io``) and the data pipeline (``data``): it reads a cohort of raw scans and
writes a BIDS-derivatives dataset and a cohort table of template-space images. ``antspyx`` is an
optional dependency (``pip install sepclr-med[preprocess]``); importing this package does not
import it.
"""

from sepclr_med.registration.scan import RegistrationConfig, register_scan
from sepclr_med.registration.template import Template

__all__ = ["RegistrationConfig", "Template", "register_scan"]
