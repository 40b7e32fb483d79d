//! trace-cmd `trace.dat` ring-buffer pages: the page walk ([`pages`]) and the records'
//! number fields ([`fields`]), a whole batch decoded per event type ([`batch`]).

pub mod batch;
pub mod fields;
pub mod pages;
