"""Drop-in session backends for agent frameworks, one module each (imported only when used)."""
