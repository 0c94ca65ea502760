from . import test_handlers
from . import test_partner
from . import test_originate
from . import test_controllers
from . import test_ui
from . import test_server
from . import test_console
