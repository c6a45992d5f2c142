//! Neural networks on tch, one definition each, shared by training and serving.
//! (The MPDR networks land here with the MPDR core.)
