"""`lisguard validate`: a site's historical feed run through `lisguard check`'s path, written
up as a report a lab reviews and signs before going live (run.py; docs in README, "Going
live")."""
