"""The ground floor: errors, settings, the model config (schema, sections, gate models, loader,
problems), metric definitions and small value helpers. Imports nothing else of the library."""
