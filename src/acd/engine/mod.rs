//! The routing engine (being written).
