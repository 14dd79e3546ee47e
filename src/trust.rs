//! Trust checks on new remote commits (SPEC §9).
