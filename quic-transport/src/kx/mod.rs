//! Key-exchange groups (being written).
