"""Reports: a sweep's runs and study -> one table of cells -> best card, figures, pages."""
