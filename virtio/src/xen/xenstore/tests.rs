//! The xenstore client against a simulated xenstored.
