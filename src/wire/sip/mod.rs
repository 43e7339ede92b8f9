//! SIP messages: views, rewriting, response building.
