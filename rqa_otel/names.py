"""Every name that leaves the process: attributes, instruments, spans, events.

This module is the single source of truth; docs/telemetry.md documents each
name, and a test checks that the two agree. OpenTelemetry has no trading
semantic conventions, so the project's own names live in the ``rqa.``
namespace (alerts included: the conventions have no ``alert.*``). Standard
names (``service.name``, ``cpu.mode`` …) are repeated here so that no other
module spells a name out.
"""

from __future__ import annotations

from typing import Final

# --- Resource attributes ---------------------------------------------------
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
# Semantic conventions 1.27 renamed `deployment.environment` to
# `deployment.environment.name`; only the new name is emitted.
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
DEPLOYMENT_ENVIRONMENT: Final = DEPLOYMENT_ENVIRONMENT_NAME
"""Deprecated alias (Python API only): the old key is no longer emitted."""
HOST_NAME: Final = "host.name"
PROCESS_PID: Final = "process.pid"

# --- Quant attributes (resource, spans, log records, data points) ----------
STRATEGY: Final = "rqa.strategy"
STOCK: Final = "rqa.stock"
SIGNAL: Final = "rqa.signal"
RUN_ID: Final = "rqa.run.id"
RUN_KIND: Final = "rqa.run.kind"
# Set by the user (resource_attributes); the fleet gateways route by it (docs/capacity.md).
DESK: Final = "rqa.desk"
STRATEGY_PARAMETER_PREFIX: Final = "rqa.strategy.param."
STRATEGY_CLASS: Final = "rqa.strategy.class"

# Values used where a quant attribute is not known (the design's QuantFilter).
DEFAULT_STRATEGY: Final = "GLOBAL"
DEFAULT_STOCK: Final = "N/A"
DEFAULT_SIGNAL: Final = "NONE"

# --- Trading attributes ----------------------------------------------------
TRADE_SIDE: Final = "rqa.trade.side"
TRADE_PRICE: Final = "rqa.trade.price"
TRADE_QUANTITY: Final = "rqa.trade.quantity"
TRADE_NOTIONAL: Final = "rqa.trade.notional_value"
TRADE_SEQUENCE: Final = "rqa.trade.sequence"
PORTFOLIO_HOLDINGS: Final = "rqa.portfolio.holdings"
METRIC_OVERFLOW: Final = "otel.metric.overflow"  # the OTel specification's overflow marker
CARDINALITY_ALERT: Final = "metric_cardinality_limit"

# --- Alerts ----------------------------------------------------------------
# The semantic conventions define no alert.* namespace: the project's own.
ALERT_NAME: Final = "rqa.alert.name"
ALERT_SEVERITY: Final = "rqa.alert.severity"
ALERT_MESSAGE: Final = "rqa.alert.message"
ALERT_SEVERITIES: Final = ("info", "warning", "critical")

# --- Logging pipeline ------------------------------------------------------
LOG_LOGGER: Final = "rqa.log.logger"
LOG_LEVEL: Final = "rqa.log.level"
LOG_DROP_REASON: Final = "rqa.log.drop_reason"
LOG_DROP_REASONS: Final = ("sampled", "queue_full", "export_failed", "write_failed", "internal_error")
LOG_SUPPRESSED_COUNT: Final = "rqa.log.suppressed_count"
LOG_EXPORT_FAILED_ALERT: Final = "log_export_failed"

# --- Trading errors ----------------------------------------------------------
ORDER_ID: Final = "rqa.order.id"
ERROR_TYPE: Final = "rqa.error.type"
ERROR_REASON: Final = "rqa.error.reason"
ERROR_REQUIRED: Final = "rqa.error.required"
ERROR_AVAILABLE: Final = "rqa.error.available"
ERROR_CURRENT: Final = "rqa.error.current"
ERROR_LIMIT: Final = "rqa.error.limit"
ERROR_ATTEMPTS: Final = "rqa.error.attempts"
ERROR_OUTCOME: Final = "rqa.error.outcome"
ERROR_OUTCOMES: Final = ("recovered", "gave_up", "not_retried", "refused")
RETRY_DELAY_S: Final = "rqa.retry.delay_s"
RETRY_FUNCTION: Final = "rqa.retry.function"  # the function RetryHandler.with_retry retried
RETRY_ALERT: Final = "retry"  # RetryHandler.with_retry: a call that needed retries
BREAKER_NAME: Final = "rqa.circuit_breaker.name"
BREAKER_STATE: Final = "rqa.circuit_breaker.state"
BREAKER_PREVIOUS_STATE: Final = "rqa.circuit_breaker.previous_state"
BREAKER_LOGGER: Final = "rqa.circuit_breaker"
# Alert names of the trading error taxonomy.
ALERT_TRADING_ERROR: Final = "trading_error"
ALERT_ORDER_REJECTED: Final = "order_rejected"
ALERT_INSUFFICIENT_FUNDS: Final = "insufficient_funds"
ALERT_POSITION_LIMIT: Final = "position_limit"
ALERT_BROKER_CONNECTION: Final = "broker_connection"
ALERT_CIRCUIT_OPEN: Final = "circuit_open"
ALERT_DATA_LOAD_FAILED: Final = "data_load_failed"
BREAKER_OPEN_ALERT: Final = "circuit_breaker_open"
CIRCUIT_BREAKER_READINESS: Final = "circuit_breakers"  # the /ready check

# --- Span and event names --------------------------------------------------
ALERT_SPAN: Final = "rqa.alert"
BACKTEST_SPAN: Final = "rqa.backtest"
TRADE_EVENT: Final = "rqa.trade"
PORTFOLIO_EVENT: Final = "rqa.portfolio"
RETRY_EVENT: Final = "rqa.retry"
# The design's ApplicationMonitor.record_custom_metric: one event per value.
CUSTOM_METRIC_EVENT: Final = "rqa.custom_metric"
CUSTOM_METRIC_NAME: Final = "rqa.custom_metric.name"
CUSTOM_METRIC_VALUE: Final = "rqa.custom_metric.value"
CUSTOM_METRIC_TAG_PREFIX: Final = "rqa.custom_metric.tag."

# --- Instruments -----------------------------------------------------------
ALERTS_COUNTER: Final = "rqa.alerts"
TRADES_COUNTER: Final = "rqa.trades"
TRADE_NOTIONAL_COUNTER: Final = "rqa.trade.notional"
PORTFOLIO_VALUE_GAUGE: Final = "rqa.portfolio.value"
PORTFOLIO_CASH_GAUGE: Final = "rqa.portfolio.cash"
PORTFOLIO_POSITIONS_GAUGE: Final = "rqa.portfolio.positions"
PORTFOLIO_DRAWDOWN_GAUGE: Final = "rqa.portfolio.drawdown"
PORTFOLIO_RETURN_GAUGE: Final = "rqa.portfolio.return"
TRADE_VOLUME_COUNTER: Final = "rqa.trade.volume"
TRADE_NOTIONAL_HISTOGRAM: Final = "rqa.trade.notional_per_trade"
LOG_RECORDS_DROPPED_COUNTER: Final = "rqa.log.records.dropped"
LOG_RECORDS_SUPPRESSED_COUNTER: Final = "rqa.log.records.suppressed"
TRADING_ERRORS_COUNTER: Final = "rqa.trading_errors"
CIRCUIT_BREAKER_STATE_GAUGE: Final = "rqa.circuit_breaker.state"

# --- Resources (semantic conventions where they exist) ------------------------
SYSTEM_MEMORY_STATE: Final = "system.memory.state"
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_TYPE: Final = "hw.type"
SYSTEM_CPU_UTILIZATION: Final = "system.cpu.utilization"
SYSTEM_MEMORY_USAGE: Final = "system.memory.usage"
SYSTEM_MEMORY_LIMIT: Final = "system.memory.limit"
SYSTEM_MEMORY_UTILIZATION: Final = "system.memory.utilization"
PROCESS_CPU_UTILIZATION: Final = "process.cpu.utilization"
CPU_MODE: Final = "cpu.mode"  # on process.cpu.utilization: user | system
PROCESS_MEMORY_USAGE: Final = "process.memory.usage"
PROCESS_THREAD_COUNT: Final = "process.thread.count"
PROCESS_FILE_DESCRIPTOR_COUNT: Final = "process.unix.file_descriptor.count"
HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"
HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"
HW_TEMPERATURE: Final = "hw.temperature"
HW_POWER: Final = "hw.power"
# No convention covers these: per-process GPU memory and per-strategy sums.
PROCESS_GPU_MEMORY_USAGE: Final = "rqa.process.gpu.memory.usage"
# CPU in cores busy (2.5 = two and a half cores), unit `{cpu}` as the
# conventions' container.cpu.usage and k8s.pod.cpu.usage; it was
# rqa.strategy.cpu.percent with unit `%`, which the conventions never use.
STRATEGY_CPU_USAGE: Final = "rqa.strategy.cpu.usage"
STRATEGY_CPU_PERCENT: Final = STRATEGY_CPU_USAGE
"""Deprecated alias (Python API only) of STRATEGY_CPU_USAGE."""
STRATEGY_MEMORY_USAGE: Final = "rqa.strategy.memory.usage"
STRATEGY_THREAD_COUNT: Final = "rqa.strategy.thread.count"
STRATEGY_FILE_DESCRIPTOR_COUNT: Final = "rqa.strategy.file_descriptor.count"
STRATEGY_PROCESS_COUNT: Final = "rqa.strategy.process.count"
STRATEGY_GPU_MEMORY_USAGE: Final = "rqa.strategy.gpu.memory.usage"

# --- Quotas, the run-directory registry and the host agent ----------------------
EVENT_NAME: Final = "event.name"
"""Deprecated (Python API only): events carry the log record's EventName
field now (``EVENT_NAMES``), not this attribute."""
QUOTA_RESOURCE: Final = "rqa.quota.resource"  # cpu | memory | gpu_memory | workers
QUOTA_LIMIT: Final = "rqa.quota.limit"
QUOTA_VALUE: Final = "rqa.quota.value"
QUOTA_EPISODE_ID: Final = "rqa.quota.episode_id"
QUOTA_BREACH_ALERT: Final = "quota_breach"
QUOTA_RECOVERED_EVENT: Final = "rqa.quota.recovered"
QUOTA_WARNING_EVENT: Final = "rqa.quota.warning"
QUOTA_BREACHES_COUNTER: Final = "rqa.quota.breaches"
QUOTA_RECOVERIES_COUNTER: Final = "rqa.quota.recoveries"
QUOTA_WORKERS_REFUSED_COUNTER: Final = "rqa.quota.workers_refused"
QUOTA_LIMIT_GAUGE: Final = "rqa.strategy.quota.limit"
QUOTA_USAGE_GAUGE: Final = "rqa.strategy.quota.usage"
QUOTA_UTILIZATION_GAUGE: Final = "rqa.strategy.quota.utilization"
QUOTA_STATE_GAUGE: Final = "rqa.strategy.quota.state"
QUOTA_READINESS: Final = "quotas"  # the agent's /ready check
AGENT_WORKER_RESTARTS_COUNTER: Final = "rqa.agent.worker_restarts"
# --- Durable export spool ----------------------------------------------------
EXPORT_SIGNAL: Final = "rqa.export.signal"
EXPORT_VALUE: Final = "rqa.export.value"
EXPORT_VALUES: Final = ("low", "normal", "critical")
SPOOL_DROP_REASON: Final = "rqa.export.spool.drop_reason"
SPOOL_DROP_REASONS: Final = ("evicted", "spool_full", "write_failed", "rejected", "corrupt")
SPOOL_SIZE_GAUGE: Final = "rqa.export.spool.size"
SPOOL_DROPPED_COUNTER: Final = "rqa.export.spool.dropped"
SPOOL_REPLAYED_COUNTER: Final = "rqa.export.spool.replayed"
SPOOL_CRITICAL_DATA_LOST_ALERT: Final = "spool_critical_data_lost"
SPOOL_WRITE_FAILED_ALERT: Final = "spool_write_failed"
SPOOL_CORRUPT_BATCH_ALERT: Final = "spool_corrupt_batch"
EXPORT_REJECTED_ALERT: Final = "export_rejected"
SPOOL_READINESS: Final = "export_spool"  # the /ready check, one per signal: export_spool_<signal>
# Points an encoder could not carry (rqa_otel/export/dropped.py)
EXPORT_POINTS_DROPPED_COUNTER: Final = "rqa.export.points.dropped"
EXPORT_DROP_REASON: Final = "rqa.export.drop_reason"
EXPORT_DROP_REASONS: Final = ("invalid_name", "invalid_value", "no_fields", "out_of_range")

# --- Instrumentation scope -------------------------------------------------
SCOPE: Final = "rqa_otel"

# --- backtrader instrumentation (rqa_otel/instrumentation/backtrader.py) ------
ORDER_EVENT: Final = "rqa.order"
ORDERS_COUNTER: Final = "rqa.orders"
ORDER_STATUS: Final = "rqa.order.status"
ORDER_TYPE: Final = "rqa.order.type"
ORDER_SIZE: Final = "rqa.order.size"
ORDER_PRICE: Final = "rqa.order.price"

# --- Settings hot reload (rqa_otel.config) -----------------------------------
CONFIG_RELOAD_SPAN: Final = "rqa.config.reload"
CONFIG_RELOAD_OUTCOME: Final = "rqa.config.reload.outcome"
CONFIG_RELOAD_OUTCOMES: Final = ("changed", "unchanged", "failed")
CONFIG_RELOAD_TRIGGER: Final = "rqa.config.reload.trigger"
CONFIG_RELOAD_TRIGGERS: Final = ("file", "poll", "sighup", "explicit")
CONFIG_CHANGED_KEYS: Final = "rqa.config.changed_keys"
CONFIG_RESTART_REQUIRED: Final = "rqa.config.restart_required"
CONFIG_RELOADS_COUNTER: Final = "rqa.config.reloads"
CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE: Final = "rqa.config.last_reload_successful"
CONFIG_RELOAD_FAILED_ALERT: Final = "config_reload_failed"

# --- Events ------------------------------------------------------------------
# Log records that are events, by logger (scope) name: the record's EventName
# field (OTLP LogRecord.event_name). Every other record has none.
BREAKER_STATE_EVENT: Final = "rqa.circuit_breaker.state_change"
EVENT_NAMES: Final = {
    TRADE_EVENT: TRADE_EVENT,
    PORTFOLIO_EVENT: PORTFOLIO_EVENT,
    ORDER_EVENT: ORDER_EVENT,
    QUOTA_RECOVERED_EVENT: QUOTA_RECOVERED_EVENT,
    QUOTA_WARNING_EVENT: QUOTA_WARNING_EVENT,
    BREAKER_LOGGER: BREAKER_STATE_EVENT,
}

# --- Source code location on log records (setting logging.code_attributes) ---
CODE_FILE_PATH: Final = "code.file.path"
CODE_FUNCTION_NAME: Final = "code.function.name"
CODE_LINE_NUMBER: Final = "code.line.number"
