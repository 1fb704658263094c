"""Names of the sample sites and plates that every model/guide pair shares.

A pair that uses other names says so in its docstring; the engine reads these
constants, never string literals.
"""

#: The latent variable, sampled by the model's prior and by the guide.
Z = "z"
#: The lower latent of the two-layer model (z2 → z1 → x; its top latent is ``Z``).
Z1 = "z1"
#: The observation, sampled by the model with ``obs=x``.
X = "x"
#: The label, observed by conditional models (``obs=y``).
Y = "y"
#: The batch plate; it sits at ``dim=-1`` so that particle plates can go to its left.
DATA = "data"
#: The plate that vectorizes importance samples; it sits left of every model plate.
PARTICLES = "particles"
