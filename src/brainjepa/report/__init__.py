"""The quickstart pipeline and its report (figures + markdown)."""
