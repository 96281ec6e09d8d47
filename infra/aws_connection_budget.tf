# The connection budget: how many PostgreSQL connections each ECS task may open, derived
# from the database's limit, so that every task of every service on one instance fits at
# once, a rolling deploy's doubling included. The task definitions pass the result to the
# services as DB_POOL_SIZE, DB_MAX_OVERFLOW and RELAY_POOL_SIZE (ServiceSettings reads
# them unprefixed); aws_db_instance.main refuses a plan whose tasks could exceed the limit.
locals {
  # Memory (GiB) of each offered RDS class; database_instance_class must be one of them.
  database_class_memory_gib = {
    "db.t4g.micro"   = 1
    "db.t4g.small"   = 2
    "db.t4g.medium"  = 4
    "db.t4g.large"   = 8
    "db.t4g.xlarge"  = 16
    "db.t4g.2xlarge" = 32
    "db.m7g.large"   = 8
    "db.m7g.xlarge"  = 16
    "db.m7g.2xlarge" = 32
    "db.r7g.large"   = 16
    "db.r7g.xlarge"  = 32
    "db.r7g.2xlarge" = 64
  }
  # RDS's default is LEAST(DBInstanceClassMemory/9531392, 5000), where DBInstanceClassMemory
  # is the class's memory less what the OS and RDS's own processes take: somewhat below
  # this formula on the class's memory, and published for no class. So the parameter group
  # sets max_connections to the formula on the class's memory (db.t4g.micro 112, small 225,
  # medium 450, large 901, xlarge 1802, 2xlarge 3604, 5000 from 64 GiB): the limit checked
  # here is then the limit the database enforces.
  database_max_connections = {
    for class, gib in local.database_class_memory_gib : class => min(floor(gib * 1073741824 / 9531392), 5000)
  }
  database_connection_limit = lookup(local.database_max_connections, var.database_instance_class, 0)

  # Not for the services: RDS keeps superuser_reserved_connections (3) for its own
  # rdsadmin, and operators need room for psql, a migration or a dump by hand.
  database_reserved_connections = 3 + var.database_operator_connections

  # Every task a service can have at once: max_tasks, and during a rolling deploy as many
  # again (deployment_maximum_percent; the old tasks keep their connections until they stop).
  peak_tasks = {
    for svc, size in local.service_sizes : svc => ceil(size.max_tasks * local.deployment_maximum_percent / 100)
  }

  # What is left on each instance, split evenly over the peak tasks of the services on it.
  connections_per_task = {
    for instance, svcs in local.database_instances : instance => floor(
      (local.database_connection_limit - local.database_reserved_connections) / max(1, sum([for svc in svcs : local.peak_tasks[svc]]))
    )
  }

  # A task's share: a quarter to the relay's own pool, one to four (the relay publishes to
  # as many destinations at once; four is what a local run has), the rest to the main pool,
  # kept rather than overflow (an overflow connection is closed when handed back, and
  # opening one is expensive), at most 10 kept and 10 overflow as locally. service_settings
  # may set any of the three instead. The floors (one connection for each pool) can exceed
  # a share that is too small, and so can a size set by hand: the precondition on
  # aws_db_instance.main then refuses the plan.
  task_share = { for svc in keys(local.deployed_services) : svc => local.connections_per_task[local.instance_of[svc]] }
  relay_pool_size = {
    for svc, share in local.task_share : svc => coalesce(local.service_sizes[svc].relay_pool_size, max(1, min(4, floor(share / 4))))
  }
  db_pool_size = {
    for svc, share in local.task_share : svc => coalesce(local.service_sizes[svc].db_pool_size, max(1, min(10, share - local.relay_pool_size[svc])))
  }
  database_pools = {
    for svc, share in local.task_share : svc => {
      DB_POOL_SIZE = local.db_pool_size[svc]
      DB_MAX_OVERFLOW = coalesce(
        local.service_sizes[svc].db_max_overflow, max(0, min(10, share - local.relay_pool_size[svc] - local.db_pool_size[svc]))
      )
      RELAY_POOL_SIZE = local.relay_pool_size[svc]
    }
  }
  connections_per_task_of = {
    for svc, p in local.database_pools : svc => p.DB_POOL_SIZE + p.DB_MAX_OVERFLOW + p.RELAY_POOL_SIZE
  }

  # The least a task works with: three connections for its handlers, HTTP requests and
  # workers (an orchestrator runs two consumers, the deadline worker, the gauges, the API and
  # the janitor on them), one for its relay. Below it waits queue behind one connection and
  # become pool timeouts, retries and blocked FIFO groups; the plan refuses it.
  minimum_main_pool  = 3
  minimum_relay_pool = 1
  below_minimum_pool = sort([
    for svc, p in local.database_pools : svc
    if p.DB_POOL_SIZE + p.DB_MAX_OVERFLOW < local.minimum_main_pool || p.RELAY_POOL_SIZE < local.minimum_relay_pool
  ])

  # The most connections each instance can be asked for, reserve included.
  database_peak_connections = {
    for instance, svcs in local.database_instances : instance => local.database_reserved_connections + sum([
      for svc in svcs : local.peak_tasks[svc] * local.connections_per_task_of[svc]
    ])
  }
}
