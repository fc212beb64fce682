"""Membership inference on a trained model, audited as LiRA and ML Privacy Meter do:
attacks behind one interface (:mod:`learning.membership.base`), selectable by name via
:data:`MEMBERSHIP_ATTACKS` / :func:`get_membership_attack`:

``"loss"``, ``"confidence"``, ``"entropy"``, ``"modified_entropy"``, ``"label_only"``
(:mod:`~learning.membership.attacks`), ``"shokri"`` (:mod:`~learning.membership.shokri`),
``"lira_offline"``, ``"lira_online"`` (:mod:`~learning.membership.lira`).

:func:`audit_membership` runs them on a model and returns AUC and TPR at 0.1% / 1% FPR
with chance levels and a log-log ROC plot (:mod:`~learning.membership.scoring`). Shadow
models are trained by the defences' batched trainer (:mod:`learning.defences`).
"""

from learning.membership.attacks import (
    ConfidenceAttack,
    EntropyAttack,
    LabelOnlyAttack,
    LossAttack,
    ModifiedEntropyAttack,
)
from learning.membership.audit import (
    ALL_ATTACKS,
    AuditSettings,
    MembershipAudit,
    MembershipSplit,
    audit_membership,
    membership_split,
    model_query,
)
from learning.membership.base import (
    MEMBERSHIP_ATTACKS,
    MembershipAttack,
    MembershipContext,
    ShadowFamily,
    get_membership_attack,
    register_membership_attack,
)
from learning.membership.lira import LiraOffline, LiraOnline
from learning.membership.scoring import plot_privacy_accuracy, plot_roc, roc, roc_figures
from learning.membership.shadows import ShadowRecipe, train_family
from learning.membership.shokri import ShokriShadow

__all__ = [
    "ALL_ATTACKS",
    "MEMBERSHIP_ATTACKS",
    "AuditSettings",
    "ConfidenceAttack",
    "EntropyAttack",
    "LabelOnlyAttack",
    "LiraOffline",
    "LiraOnline",
    "LossAttack",
    "MembershipAttack",
    "MembershipAudit",
    "MembershipContext",
    "MembershipSplit",
    "ModifiedEntropyAttack",
    "ShadowFamily",
    "ShadowRecipe",
    "ShokriShadow",
    "audit_membership",
    "get_membership_attack",
    "membership_split",
    "model_query",
    "plot_privacy_accuracy",
    "plot_roc",
    "register_membership_attack",
    "roc",
    "roc_figures",
    "train_family",
]
