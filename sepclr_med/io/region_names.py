"""Atlas codes as a clinician reads them: ``Hippocampus_L`` -> "left hippocampus".

Covers the AAL/AAL3 naming scheme (abbreviated tokens joined by ``_``, a final ``_L``/``_R``);
a name it does not recognise comes back with underscores as spaces, never invented.
"""

from __future__ import annotations

import re

WORDS = {
    "Sup": "superior", "Mid": "middle", "Inf": "inferior", "Med": "medial", "Ant": "anterior",
    "Post": "posterior", "Orb": "orbital", "Oper": "opercular", "Tri": "triangular", "Pole": "pole",
    "Frontal": "frontal gyrus", "Temporal": "temporal gyrus", "Occipital": "occipital gyrus",
    "Parietal": "parietal lobule", "Cingulum": "cingulate gyrus", "Cingulate": "cingulate cortex",
    "Supp": "supplementary", "Motor": "motor", "Area": "area", "Rolandic": "rolandic",
    "Olfactory": "olfactory cortex", "Rectus": "gyrus rectus", "Insula": "insula",
    "Hippocampus": "hippocampus", "ParaHippocampal": "parahippocampal gyrus", "Amygdala": "amygdala",
    "Calcarine": "calcarine cortex", "Cuneus": "cuneus", "Lingual": "lingual gyrus",
    "Fusiform": "fusiform gyrus", "Postcentral": "postcentral gyrus", "Precentral": "precentral gyrus",
    "SupraMarginal": "supramarginal gyrus", "Angular": "angular gyrus", "Precuneus": "precuneus",
    "Paracentral": "paracentral", "Lobule": "lobule", "Caudate": "caudate nucleus", "Putamen": "putamen",
    "Pallidum": "pallidum", "Thalamus": "thalamus", "Heschl": "Heschl's gyrus",
    "Cerebelum": "cerebellum", "Cerebellum": "cerebellum", "Vermis": "vermis", "Crus1": "crus I",
    "Crus2": "crus II", "OFCmed": "medial orbitofrontal cortex", "OFCant": "anterior orbitofrontal cortex",
    "OFCpost": "posterior orbitofrontal cortex", "OFClat": "lateral orbitofrontal cortex",
    "ACC": "anterior cingulate cortex", "pre": "pregenual", "sub": "subgenual", "sup": "supracallosal",
    "Red": "red", "N": "nucleus", "SN": "substantia nigra", "VTA": "ventral tegmental area",
    "LC": "locus coeruleus", "Raphe": "raphe", "D": "dorsal", "M": "median", "pc": "pars compacta",
    "pr": "pars reticulata", "Acc": "accumbens", "Nucleus": "nucleus",
}  # fmt: skip
SIDES = {"L": "left", "R": "right"}
PHRASES = {  # whole stems whose order the word-by-word rule would get wrong
    "Frontal_Inf_Tri": "inferior frontal gyrus, pars triangularis",
    "Frontal_Inf_Oper": "inferior frontal gyrus, pars opercularis",
    "Frontal_Inf_Orb": "inferior frontal gyrus, pars orbitalis",
    "Temporal_Pole_Sup": "superior temporal pole",
    "Temporal_Pole_Mid": "middle temporal pole",
    "Rolandic_Oper": "rolandic operculum",
    "Thal": "thalamus",
}


def readable_region_name(name: str) -> str:
    """``Frontal_Sup_2_L`` -> "left superior frontal gyrus (2)"; ``Vermis_1_2`` -> "vermis 1 2";
    unknown tokens are kept as written."""
    tokens = [t for t in re.split(r"[_\s]+", str(name).strip()) if t]
    side = SIDES.get(tokens[-1]) if len(tokens) > 1 else None
    if side:
        tokens = tokens[:-1]
    numbers = [t for t in tokens if re.fullmatch(r"\d+[a-z]?", t)]
    words = [WORDS.get(t, t) for t in tokens if t not in numbers]
    for stem, phrase in PHRASES.items():
        parts = stem.split("_")
        if tokens[: len(parts)] == parts:
            words = [phrase, *[WORDS.get(t, t) for t in tokens[len(parts) :] if t not in numbers]]
            break
    # the gyrus/lobule noun goes last: "Frontal Sup" -> "superior frontal gyrus"
    nouns = [w for w in words if w.endswith(("gyrus", "lobule", "cortex"))]
    if len(nouns) == 1 and words[0] == nouns[0] and len(words) > 1:
        words = words[1:] + nouns
    text = " ".join(words)
    if numbers and tokens[0] in ("Vermis", "Cerebelum", "Cerebellum"):  # lobule numbers
        text += f" lobule{'s' if len(numbers) > 1 else ''} {'-'.join(numbers)}"
    elif numbers:
        text += f" ({' '.join(numbers)})"
    return f"{side} {text}" if side else text
