"""fer-train: data readers, subject-independent splits, the hybrid CNN, training and its report."""
