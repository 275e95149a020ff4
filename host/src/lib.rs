//! laser-host: trains a language model against several reward models at
//! once and learns, per prompt, which reward model to trust (LASeR).
