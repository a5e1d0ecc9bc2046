"""Every default of a run, in one place: the command line, the Options objects, the partition spec and
the FAB's run config (``[tool.flwr.app.config]``, generated from these) all read them here."""

# training
ROUNDS = 10
C = 1.0  # inverse regularisation strength of the pooled problem
PENALTY = "l2"
SEED = 0  # a member's train/validation split and SMOTE draw (its own setting), and the partition of one CSV
# ROUNDS is the most a run trains: it stops earlier once a round moves the global parameters by less than
# this fraction of their length (the criterion and why this value: learning/convergence.py); 0 never stops early
CONVERGENCE_TOLERANCE = 1e-3
# how training makes up for the rare class (learning/balance.py): smote, class-weights or none. Chosen by
# evidence: `compare --class-balance auto` picks per split by the clients' pooled validation PR-AUC
CLASS_BALANCE = "none"
# the model family (learning/families.py) and the gbdt family's settings (learning/trees.py): docs/models.md
# gives the evidence (compare's CMS splits, within the budget of about 330 exchanges a run)
FAMILY = "logistic"
FAMILIES = ("logistic", "gbdt")  # every registered family's name (learning/families.py registers them)
TREES = 80  # the most trees; boosting stops earlier on the pooled validation loss (learning/gbdt.py)
DEPTH = 4
LEARNING_RATE = 0.2
L2 = 1.0  # on the leaf values
MIN_ROWS_LEAF = 20  # no node describes fewer rows of the federation (a member pins it at least its min_rows)
MIN_HESSIAN = 1e-3
CELL_ROWS = 20  # below the root, a node's histogram cell describes about this many of its rows (trees.cell_ends)

# what a member pins in its own account (app/pins.py); docs/trust-model.md says why these values
MIN_MEMBERS = 3  # k: the fewest members a total may be over
MIN_ROWS = 10  # m: the fewest of its own rows an answer may describe (honest CMS runs: 14.0 at least)
MAX_ROUNDS_PINNED = 50  # the most rounds a member answers in one run
MAX_TREES_PINNED = 300  # the most trees a member grows in one run (gbdt)
MAX_JOBS_PER_DAY = 10  # the most federation jobs a client's launcher starts in 24 hours

# waits
NODE_WAIT_TIMEOUT = 120.0  # local: seconds for the SuperNodes to connect
CONNECT_TIMEOUT = 900.0  # across accounts: seconds for a training job to start and join (SageMaker takes minutes)
ROUND_TIMEOUT = 300.0  # seconds to wait for the replies of one exchange
REPLY_POLL_SECONDS = 0.05  # how often the ServerApp asks for replies (Flower's own Grid: every 3 s)
STOCK_REPLY_POLL_SECONDS = 3.0  # Flower's own, for benchmarking the difference
TASK_POLL_SECONDS = 0.05  # how often the executors (the client's runner, the SuperLink's SuperExec) ask for work
STOCK_TASK_POLL_SECONDS = 1.0  # how often Flower's SuperExec asks for a task, for the same comparison

# splitting one CSV into a federation (prepare-data, compare, the synthetic default of `local`)
CLIENTS = 3
PARTITION = "non-iid"
SKEW = "label"
ALPHA = 1.0  # Dirichlet concentration; smaller is more skewed
TEST_FRACTION = 0.2
SYNTHETIC_ROWS = 5500  # the size of the curated CMS dataset

# the settings the stacks publish in SSM
PARAMETER_PREFIX = "/fl-fraud"
