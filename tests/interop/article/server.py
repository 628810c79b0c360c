#!/usr/bin/env python
# encoding: utf-8
#
# The article's subscriber ("服务端", serverMqttTest.py), re-created for tests/interop/test_article.py
# from the article in /work/shared/seeds/ (python教程, 2020-08-24). Changes, and only these:
#   - the broker's host and port come from MQTT_HOST / MQTT_PORT, defaulting to the article's
#     127.0.0.1:1883 (the tests run the gateway on a port the kernel picks);
#   - paho-mqtt 2.x needs `mqtt.CallbackAPIVersion.VERSION1` as the first argument of
#     `mqtt.Client` to keep the article's callback signatures; paho-mqtt 1.6 is called as in
#     the article;
#   - the article's code lost its indentation in the page; it is restored here.
# Everything else, typos included ("resurt", "conenet"), is as in the article.
"""
@version: v1.0
@author: W_H_J
@license: Apache Licence
@contact: 415900617@qq.com
@software: PyCharm
@file: serverMqttTest.py
@time: 2019/2/22 14:35
@describe: mqtt 服务端
"""
import json
import sys
import os
import time
import paho.mqtt.client as mqtt
sys.path.append(os.path.abspath(os.path.dirname(__file__) + '/' + '..'))
sys.path.append("..")
REPORT_TOPIC = 'test'  # 主题
MQTT_HOST = os.environ.get('MQTT_HOST', '127.0.0.1')
MQTT_PORT = int(os.environ.get('MQTT_PORT', '1883'))


def on_connect(client, userdata, flags, rc):
    print('connected to mqtt with resurt code ', rc)
    client.subscribe(REPORT_TOPIC)  # 订阅主题


def on_message(client, userdata, msg):
    """
    接收客户端发送的消息
    :param client: 连接信息
    :param userdata:
    :param msg: 客户端返回的消息
    :return:
    """
    print("Start server!")
    payload = json.loads(msg.payload.decode('utf-8'))
    print(payload)


def server_conenet(client):
    client.on_connect = on_connect  # 启用订阅模式
    client.on_message = on_message  # 接收消息
    client.connect(MQTT_HOST, MQTT_PORT, 60)  # 链接
    # client.loop_start()    # 以start方式运行,需要启动一个守护线程,让服务端运行,否则会随主线程死亡
    client.loop_forever()  # 以forever方式阻塞运行。


def server_stop(client):
    client.loop_stop()  # 停止服务端
    sys.exit(0)


def server_main():
    client_id = time.strftime('%Y%m%d%H%M%S', time.localtime(time.time()))
    if hasattr(mqtt, 'CallbackAPIVersion'):  # paho-mqtt 2.x: keep the article's callbacks
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id, transport='tcp')
    else:
        client = mqtt.Client(client_id, transport='tcp')
    server_conenet(client)


if __name__ == '__main__':
    # 启动监听
    server_main()
