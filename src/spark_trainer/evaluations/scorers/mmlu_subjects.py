"""MMLU's 57 subjects and the official groups they belong to.

The mapping is the one published with the benchmark (``categories.py`` in
hendrycks/test): each subject has one subcategory (``math``, ``physics``, …) and each
subcategory one of four categories (STEM, humanities, social sciences, other). A
``subjects`` entry may name a subject, a subcategory or a category; names use
underscores (``computer_science``, ``social_sciences``) and the spec's ``mathematics`` is
the ``math`` subcategory.
"""

from __future__ import annotations

SUBCATEGORY: dict[str, str] = {
    "abstract_algebra": "math",
    "anatomy": "health",
    "astronomy": "physics",
    "business_ethics": "business",
    "clinical_knowledge": "health",
    "college_biology": "biology",
    "college_chemistry": "chemistry",
    "college_computer_science": "computer_science",
    "college_mathematics": "math",
    "college_medicine": "health",
    "college_physics": "physics",
    "computer_security": "computer_science",
    "conceptual_physics": "physics",
    "econometrics": "economics",
    "electrical_engineering": "engineering",
    "elementary_mathematics": "math",
    "formal_logic": "philosophy",
    "global_facts": "other",
    "high_school_biology": "biology",
    "high_school_chemistry": "chemistry",
    "high_school_computer_science": "computer_science",
    "high_school_european_history": "history",
    "high_school_geography": "geography",
    "high_school_government_and_politics": "politics",
    "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math",
    "high_school_microeconomics": "economics",
    "high_school_physics": "physics",
    "high_school_psychology": "psychology",
    "high_school_statistics": "math",
    "high_school_us_history": "history",
    "high_school_world_history": "history",
    "human_aging": "health",
    "human_sexuality": "culture",
    "international_law": "law",
    "jurisprudence": "law",
    "logical_fallacies": "philosophy",
    "machine_learning": "computer_science",
    "management": "business",
    "marketing": "business",
    "medical_genetics": "health",
    "miscellaneous": "other",
    "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy",
    "nutrition": "health",
    "philosophy": "philosophy",
    "prehistory": "history",
    "professional_accounting": "other",
    "professional_law": "law",
    "professional_medicine": "health",
    "professional_psychology": "psychology",
    "public_relations": "politics",
    "security_studies": "politics",
    "sociology": "culture",
    "us_foreign_policy": "politics",
    "virology": "health",
    "world_religions": "philosophy",
}

CATEGORY: dict[str, tuple[str, ...]] = {
    "stem": ("physics", "chemistry", "biology", "computer_science", "math", "engineering"),
    "humanities": ("history", "philosophy", "law"),
    "social_sciences": ("politics", "culture", "economics", "geography", "psychology"),
    "other": ("other", "business", "health"),
}

# Names the spec uses for subcategories.
ALIASES: dict[str, str] = {"mathematics": "math"}

SUBJECTS: tuple[str, ...] = tuple(sorted(SUBCATEGORY))


def expand(name: str) -> tuple[str, ...]:
    """The subjects a ``subjects`` entry stands for; empty when the name is unknown.

    A subject name wins over a group of the same spelling (``philosophy`` is both a
    subject and a subcategory; ``other`` both a subcategory and a category): asking for
    the subject scores that subject alone.
    """
    key = ALIASES.get(name, name)
    if key in SUBCATEGORY and name not in ALIASES:
        return (key,)
    groups = CATEGORY.get(key, (key,))
    return tuple(s for s in SUBJECTS if SUBCATEGORY[s] in groups)


def format_subject(subject: str) -> str:
    return subject.replace("_", " ")
