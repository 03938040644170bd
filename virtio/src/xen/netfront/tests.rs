//! netfront against a simulated netback.
