-- The emulator faults that fired in a call (SPEC section 14): a JSON array of fault IDs.
ALTER TABLE audit ADD COLUMN injected TEXT NOT NULL DEFAULT '[]';
