//! # agent-console: the Careline server and its web consoles
