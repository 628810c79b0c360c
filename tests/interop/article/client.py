#!/usr/bin/env python
# encoding: utf-8
#
# The article's publisher ("客户端", clicentMqttTest.py), re-created for tests/interop/test_article.py
# from the article in /work/shared/seeds/ (python教程, 2020-08-24). Changes, and only these:
#   - the broker's host and port come from MQTT_HOST / MQTT_PORT, defaulting to the article's
#     127.0.0.1:1883 (the tests run the gateway on a port the kernel picks);
#   - paho-mqtt 2.x needs `mqtt.CallbackAPIVersion.VERSION1` as the first argument of
#     `mqtt.Client` to keep the article's API; paho-mqtt 1.6 is called as in the article;
#   - THE ONE CHANGE OF BEHAVIOUR, marked "DEVIATION" below: clicent_main waits (bounded) for
#     the publish to complete. The article's script returns right after `publish()`, which only
#     queues the message for paho's network thread (`loop_start`), and the interpreter then exits
#     and kills that thread: whether the message left the process is a race that the script
#     loses most of the time, against any broker (about 8 runs in 10 against Mosquitto). That is
#     the script's bug, not the broker's, and a test cannot be built on it;
#   - the article's code lost its indentation in the page; it is restored here.
# Everything else, typos included ("clicent"), is as in the article.
"""
@version: v1.0
@author: W_H_J
@license: Apache Licence
@contact: 415900617@qq.com
@software: PyCharm
@file: clicentMqttTest.py
@time: 2019/2/22 14:19
@describe: mqtt客户端
"""
import json
import sys
import os
import paho.mqtt.client as mqtt
import time
sys.path.append(os.path.abspath(os.path.dirname(__file__) + '/' + '..'))
sys.path.append("..")
TASK_TOPIC = 'test'  # 客户端发布消息主题
MQTT_HOST = os.environ.get('MQTT_HOST', '127.0.0.1')
MQTT_PORT = int(os.environ.get('MQTT_PORT', '1883'))
#: DEVIATION: how long clicent_main waits for its message to leave (see the header).
PUBLISH_TIMEOUT_S = 10

client_id = time.strftime('%Y%m%d%H%M%S', time.localtime(time.time()))
"""
client_id是连接到代理。如果client_id的长度为零或为零,则行为为由使用的协议版本定义。如果使用MQTT v3.1.1,
那么一个零长度的客户机id将被发送到代理,代理将被发送为客户端生成一个随机变量。如果使用MQTT v3.1,那么id将是
随机生成的。在这两种情况下,clean_session都必须为True。如果这在这种情况下不会产生ValueError。
注意:一般情况下如果客户端服务端启用两个监听那么客户端client_id 不能与服务器相同,如这里用时间"20190222142358"作为它的id,
如果与服务器id相同,则无法接收到消息
"""
if hasattr(mqtt, 'CallbackAPIVersion'):  # paho-mqtt 2.x: keep the article's API
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id, transport='tcp')
else:
    client = mqtt.Client(client_id, transport='tcp')
client.connect(MQTT_HOST, MQTT_PORT, 60)  # 此处端口默认为1883,通信端口期keepalive默认60
client.loop_start()


def clicent_main(message: str):
    """
    客户端发布消息
    :param message: 消息主体
    :return:
    """
    time_now = time.strftime('%Y-%m-%d %H-%M-%S', time.localtime(time.time()))
    payload = {"msg": "%s" % message, "data": "%s" % time_now}
    # publish(主题:Topic; 消息内容)
    info = client.publish(TASK_TOPIC, json.dumps(payload, ensure_ascii=False))
    # DEVIATION from the article: wait until paho's network thread has written the message,
    # instead of racing it to the interpreter's exit (see the header).
    info.wait_for_publish(PUBLISH_TIMEOUT_S)
    print("Successful send message!")
    return True


if __name__ == '__main__':
    msg = "我是一条测试数据!"
    clicent_main(msg)
