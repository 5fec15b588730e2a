"""Sends three log records to ENDPOINT with the OpenTelemetry Python SDK's OTLP/HTTP exporter.

One record carries `event.name` = playback.start with a valid payload shape in its attributes;
the gateway maps each record to an event. Exits non-zero if the export failed.
"""
import logging
import sys

from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

endpoint = sys.argv[1]
provider = LoggerProvider(resource=Resource.create({"service.name": "player", "service.instance.id": "tv-otel-1"}))
exporter = OTLPLogExporter(endpoint=endpoint, timeout=10)
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
set_logger_provider(provider)

logger = logging.getLogger("player")
logger.setLevel(logging.INFO)
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
logger.propagate = False

logger.info("player started", extra={"screen": "home"})
logger.warning("buffering", extra={"bitrate_kbps": 1200})
logger.error("decoder failed", extra={"code": "E42"})
provider.force_flush()
provider.shutdown()
print("exported")
