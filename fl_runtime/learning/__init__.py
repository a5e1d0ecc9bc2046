"""The learning task, free of Flower and AWS: what is learned from the data and how a client trains."""
