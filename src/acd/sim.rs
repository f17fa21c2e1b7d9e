//! The contact-centre simulator (being written).
